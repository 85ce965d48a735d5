// Command kube_strict decodes every object of rendered Helm output into its Kubernetes API type
// with unknown fields rejected, and checks names and labels against the API server's rules, so a
// misspelt or misplaced field fails here instead of at `helm install`.
//
//	go run . rendered.yaml [more.yaml ...]
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// maxStatefulSetName leaves room for the controller-revision-hash label of its pods.
const maxStatefulSetName = 52

func newObject(apiVersion, kind string) (metav1.Object, error) {
	switch apiVersion + "/" + kind {
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1/Pod":
		return &corev1.Pod{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, nil
	}
	return nil, fmt.Errorf("unexpected %s %s (add it to kube_strict if the chart now renders it)", apiVersion, kind)
}

func checkObject(doc []byte) (string, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return tm.Kind, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return tm.Kind, err
	}
	id := tm.Kind + "/" + obj.GetName()
	var problems []string
	nameErrs := validation.IsDNS1123Subdomain(obj.GetName())
	switch tm.Kind {
	case "Service":
		nameErrs = validation.IsDNS1035Label(obj.GetName())
	case "StatefulSet":
		if len(obj.GetName()) > maxStatefulSetName {
			problems = append(problems, fmt.Sprintf("name longer than %d characters", maxStatefulSetName))
		}
		sts := obj.(*appsv1.StatefulSet)
		nameErrs = append(nameErrs, validation.IsDNS1123Label(sts.Spec.ServiceName)...)
		problems = append(problems, checkLabels("pod template", sts.Spec.Template.Labels)...)
		for _, vct := range sts.Spec.VolumeClaimTemplates {
			problems = append(problems, checkLabels("volumeClaimTemplate", vct.Labels)...)
		}
		problems = append(problems, checkPodSpec(&sts.Spec.Template.Spec)...)
	case "Job":
		job := obj.(*batchv1.Job)
		problems = append(problems, checkLabels("pod template", job.Spec.Template.Labels)...)
		problems = append(problems, checkPodSpec(&job.Spec.Template.Spec)...)
	case "Pod":
		problems = append(problems, checkPodSpec(&obj.(*corev1.Pod).Spec)...)
	}
	for _, e := range nameErrs {
		problems = append(problems, "name: "+e)
	}
	problems = append(problems, checkLabels("metadata", obj.GetLabels())...)
	if len(problems) > 0 {
		return id, errors.New(strings.Join(problems, "; "))
	}
	return id, nil
}

func checkLabels(where string, labels map[string]string) []string {
	var out []string
	for k, v := range labels {
		for _, e := range validation.IsQualifiedName(k) {
			out = append(out, fmt.Sprintf("%s label key %q: %s", where, k, e))
		}
		for _, e := range validation.IsValidLabelValue(v) {
			out = append(out, fmt.Sprintf("%s label %s=%q: %s", where, k, v, e))
		}
	}
	return out
}

// checkPodSpec: every mount names a volume, every container and port name is valid.
func checkPodSpec(spec *corev1.PodSpec) []string {
	var out []string
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range spec.Containers {
		for _, e := range validation.IsDNS1123Label(c.Name) {
			out = append(out, fmt.Sprintf("container name %q: %s", c.Name, e))
		}
		for _, p := range c.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				out = append(out, fmt.Sprintf("port name %q: %s", p.Name, e))
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] && !claimed(m.Name) {
				out = append(out, fmt.Sprintf("container %s mounts unknown volume %q", c.Name, m.Name))
			}
		}
	}
	return out
}

// Volume claim templates of the StatefulSet being checked (set per object in main).
var claimTemplates = map[string]bool{}

func claimed(name string) bool { return claimTemplates[name] }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube_strict FILE...")
		os.Exit(2)
	}
	objects, bad := 0, 0
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
		for {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
				os.Exit(2)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			claimTemplates = map[string]bool{}
			var sts appsv1.StatefulSet
			if yaml.Unmarshal(doc, &sts) == nil && sts.Kind == "StatefulSet" {
				for _, vct := range sts.Spec.VolumeClaimTemplates {
					claimTemplates[vct.Name] = true
				}
			}
			objects++
			if id, err := checkObject(doc); err != nil {
				bad++
				fmt.Printf("%s: %s: %v\n", path, id, err)
			}
		}
		f.Close()
	}
	fmt.Printf("kube_strict: %d objects, %d invalid\n", objects, bad)
	if bad > 0 || objects == 0 {
		os.Exit(1)
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
